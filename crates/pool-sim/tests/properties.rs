//! Property tests over the one transition vocabulary. proptest generates
//! worlds and transition sequences (every kind), runs them with every checker
//! on, and shrinks a failure; the shrunk failure is also written out as a
//! scenario file (under `target/proptest-scenarios/`) to replay and keep.
//!
//! Each property runs 256 cases by default; set `PROPTEST_CASES` for more.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use pool_sim::fuzz::drive_core;
use pool_sim::run::{Options, Outcome, run_scenario};
use pool_sim::{Expect, Scenario, strategy};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::FileFailurePersistence;
use proptest::test_runner::TestRunner;

/// Write a failing scenario where a person can replay it. proptest calls the
/// property again for every shrink, so the last write is the smallest.
fn keep_failure(property: &str, scenario: &Scenario, outcome: &Outcome) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/proptest-scenarios");
    std::fs::create_dir_all(&dir).expect("target is writable");
    let path = dir.join(format!("{property}.toml"));
    let kept = Scenario {
        name: property.to_owned(),
        about: format!("Found by the proptest property `{property}`: {outcome:?}"),
        expect: match outcome.invariant() {
            Some(invariant) => Expect::Violation(invariant),
            None => Expect::Pass,
        },
        ..scenario.clone()
    };
    let header = "pool-sim scenario written by a failing property test.\nReplay: cargo xtask replay <this file>";
    std::fs::write(&path, kept.to_toml(header, None)).expect("the file is writable");
    path
}

proptest! {
    // Failures found are kept beside this file
    // (tests/properties.proptest-regressions) and replayed first next time.
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    /// The reference core survives any world and any transitions: no
    /// invariant breaks, nothing panics.
    #[test]
    fn reference_core_passes_any_transitions(scenario in strategy::scenario(120)) {
        let report = run_scenario(&scenario, Options::default());
        if report.outcome != Outcome::Pass {
            let path = keep_failure("reference_core_passes_any_transitions", &scenario, &report.outcome);
            prop_assert!(
                false,
                "{:?}\nlast trace lines:\n{}\nwritten to {} (cargo xtask replay {})",
                report.outcome,
                report.tail.join("\n"),
                path.display(),
                path.display()
            );
        }
    }

    /// Same steps, same trace, byte for byte.
    #[test]
    fn a_replay_is_deterministic(scenario in strategy::scenario(80)) {
        let a = run_scenario(&scenario, Options::default());
        let b = run_scenario(&scenario, Options::default());
        prop_assert_eq!(a.trace_hash, b.trace_hash);
        prop_assert_eq!(a.outcome, b.outcome);
    }

    /// A scenario survives its file format.
    #[test]
    fn scenario_files_round_trip(scenario in strategy::scenario(40)) {
        let text = scenario.to_toml("property test", None);
        let parsed = Scenario::parse(Path::new("round-trip.toml"), &text);
        prop_assert_eq!(parsed, Ok(scenario));
    }

    /// Raw pool-core inputs, nonsense included: the core never panics, keeps
    /// its bookkeeping consistent, and a refused input changes nothing.
    #[test]
    fn core_stays_consistent_under_raw_inputs(case in strategy::core_case()) {
        let result = drive_core(&case, None);
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }
}

/// The scenario strategy reaches every kind of transition.
#[test]
fn the_strategy_covers_every_transition_kind() {
    let mut runner = TestRunner::deterministic();
    let strategy = strategy::transition();
    let mut kinds = BTreeSet::new();
    for _ in 0..2_000 {
        let value = strategy.new_tree(&mut runner).expect("a value").current();
        kinds.insert(value.name());
    }
    let all = [
        "acquire",
        "cancel",
        "release",
        "taint",
        "detach",
        "unlisten",
        "connect-ok",
        "connect-fail",
        "ready-then-fin",
        "kill",
        "kill-all",
        "deliver",
        "echo",
        "set-capacity",
        "close",
        "login",
        "gc",
        "orphan",
        "spawn",
        "wait",
    ];
    for kind in all {
        assert!(kinds.contains(kind), "never generated `{kind}`");
    }
}
