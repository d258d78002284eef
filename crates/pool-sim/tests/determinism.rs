//! Same seed, same trace, byte for byte; a recorded run replays identically.

use std::path::Path;

use pool_sim::run::{Options, run_scenario, run_seed};
use pool_sim::{Expect, Keep, Scenario};

#[test]
fn same_seed_gives_the_same_trace_hash() {
    for seed in [0, 7, 42, 1234] {
        let (_, a) = run_seed(seed, 500, Options::default());
        let (_, b) = run_seed(seed, 500, Options::default());
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed}");
        assert_eq!(a.trace_lines, b.trace_lines, "seed {seed}");
        assert_eq!(a.outcome, b.outcome, "seed {seed}");
    }
}

#[test]
fn different_seeds_give_different_traces() {
    let hashes: Vec<u64> = (0..20)
        .map(|seed| run_seed(seed, 200, Options::default()).1.trace_hash)
        .collect();
    let mut unique = hashes.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), hashes.len(), "hashes: {hashes:x?}");
}

#[test]
fn the_full_trace_is_identical_line_for_line() {
    let keep = Options {
        keep: Keep::All,
        ..Options::default()
    };
    let a: Vec<String> = run_seed(3, 300, keep)
        .1
        .trace
        .iter()
        .map(|l| l.to_string())
        .collect();
    let b: Vec<String> = run_seed(3, 300, keep)
        .1
        .trace
        .iter()
        .map(|l| l.to_string())
        .collect();
    assert!(!a.is_empty());
    assert_eq!(a, b);
}

#[test]
fn a_recorded_seed_replays_to_the_same_trace_through_a_file() {
    for seed in [1, 7, 99] {
        let record = Options {
            record: true,
            ..Options::default()
        };
        let (swarm, original) = run_seed(seed, 400, record);
        let scenario = Scenario {
            name: format!("seed-{seed}"),
            about: String::new(),
            expect: Expect::Pass,
            mutation: None,
            seed: Some(seed),
            pool: swarm.pool,
            world: swarm.world,
            steps: original.recorded.iter().map(|(s, _)| s.clone()).collect(),
            meta: Vec::new(),
        };
        // Through the text format and back, as `--record` and `replay` do.
        let text = scenario.to_toml("test", None);
        let parsed = Scenario::parse(Path::new("recorded.toml"), &text).expect("it parses");
        assert_eq!(parsed, scenario);
        let replayed = run_scenario(&parsed, Options::default());
        assert_eq!(replayed.trace_hash, original.trace_hash, "seed {seed}");
        assert_eq!(replayed.outcome, original.outcome, "seed {seed}");
    }
}
