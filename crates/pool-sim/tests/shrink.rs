//! Shrinking gives a small, 1-minimal scenario that still fails the same way
//! with the mutation and passes without it.
#![cfg(feature = "mutations")]

use pool_sim::run::{Options, Outcome, record_seed, run_scenario};
use pool_sim::shrink::{Keeps, shrink};
use pool_sim::{Invariant, Mutation, Scenario};

fn recorded(seed: u64, mutation: Mutation) -> Scenario {
    let options = Options {
        mutation: Some(mutation),
        ..Options::default()
    };
    record_seed(seed, 1_000, options).0
}

fn fails_as(scenario: &Scenario, invariant: Invariant) -> bool {
    run_scenario(scenario, Options::default())
        .outcome
        .invariant()
        == Some(invariant)
}

#[test]
fn a_hunted_failure_shrinks_to_a_one_minimal_scenario() {
    // Seed 402 catches the handoff (see `cargo xtask hunt`).
    let mutation = Mutation::HandoffWhileOverCapacity;
    let original = recorded(402, mutation);
    let invariant = Invariant::CapacityStalled;
    assert!(fails_as(&original, invariant));
    let keeps = Keeps {
        invariant,
        mutation: Some(mutation),
    };
    let shrunk = shrink(&original, keeps).expect("it fails to begin with");
    let small = shrunk.scenario;
    assert!(small.steps.len() <= 30, "{} steps", small.steps.len());
    assert!(small.steps.len() < original.steps.len());
    assert!(fails_as(&small, invariant));
    let clean = Scenario {
        mutation: None,
        ..small.clone()
    };
    assert_eq!(
        run_scenario(&clean, Options::default()).outcome,
        Outcome::Pass
    );
    // 1-minimal: without any one step, the failure is gone.
    for i in 0..small.steps.len() {
        let mut fewer = small.clone();
        fewer.remove_step(i);
        let clean = Scenario {
            mutation: None,
            ..fewer.clone()
        };
        let still = fails_as(&fewer, invariant)
            && run_scenario(&clean, Options::default()).outcome == Outcome::Pass;
        assert!(!still, "step {i} can go: not 1-minimal");
    }
}

#[test]
fn a_passing_run_does_not_shrink() {
    let scenario = Scenario {
        mutation: None,
        ..recorded(1, Mutation::AcceptStaleConnect)
    };
    let keeps = Keeps {
        invariant: Invariant::GhostIdle,
        mutation: None,
    };
    // Without the mutation seed 1 passes: there is nothing to shrink.
    assert!(shrink(&scenario, keeps).is_none());
}
