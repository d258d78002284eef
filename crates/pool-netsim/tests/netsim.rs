//! Netsim runs against every pool under test: a bounded sweep where only known findings may fail, the known findings' shrunk scenarios (still found; gone when the same steps run on pool-tokio), and crash seeds run twice in one process.

use std::path::{Path, PathBuf};

use pool_netsim::known::{self, Classification, FINDINGS};
use pool_netsim::netsim::{NetOutcome, run, run_scenario};
use pool_netsim::plan::{Event, Expect, NetScenario};
use pool_netsim::under_test::{PoolKind, PoolOptions};

/// Seeds per pool in the bounded sweep (the full tables come from
/// `cargo xtask netsim --pools all --seeds 0..300`).
const SWEEP_SEEDS: u64 = 8;

#[test]
fn every_pool_passes_a_bounded_sweep_but_for_known_findings() {
    for kind in PoolKind::ALL {
        for seed in 0..SWEEP_SEEDS {
            let report = run(seed, kind);
            assert!(report.gets_ok > 0, "{kind} seed {seed}: nothing was served");
            if report.outcome == NetOutcome::Pass {
                continue;
            }
            let finding = known::finding_for(&report);
            assert!(
                finding.is_some() && kind != PoolKind::PoolTokio,
                "{kind} seed {seed}: {:?}\n{:#?}\nreproduce: cargo xtask netsim --pool {kind} --seed {seed}",
                report.outcome,
                report.trace_tail
            );
        }
    }
}

fn scenario_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the scenarios directory is readable")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// Each scenario file replays as its `expect` says, every failing one is a
/// known finding that names its write-up, and every known finding has a
/// scenario: the harness still finds each of them.
#[test]
fn the_known_findings_scenarios_still_fail_as_expected() {
    let mut found: Vec<&str> = Vec::new();
    for file in scenario_files() {
        let scenario = NetScenario::load(&file).unwrap_or_else(|e| panic!("{e}"));
        let report = run_scenario(&scenario);
        let got = match &report.outcome {
            NetOutcome::Pass => Expect::Pass,
            other => Expect::Fail(other.name()),
        };
        assert_eq!(
            Some(&got),
            scenario.expect.as_ref(),
            "{}: {:?}\nreplay: cargo xtask netsim --replay {}",
            file.display(),
            report.outcome,
            file.display()
        );
        if got != Expect::Pass {
            let finding = known::finding_for(&report)
                .unwrap_or_else(|| panic!("{}: not a known finding", file.display()));
            assert!(
                scenario.about.contains(finding.write_up),
                "{}",
                file.display()
            );
            found.push(finding.name);
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for finding in FINDINGS {
        assert!(
            found.contains(&finding.name),
            "no scenario shows {}",
            finding.name
        );
        assert!(
            root.join(finding.write_up).exists(),
            "{}: no write-up at {}",
            finding.name,
            finding.write_up
        );
    }
}

/// The real bugs' scenarios are the third-party pool's: the same workload
/// and faults on pool-tokio pass, so the check is not what fails.
#[test]
fn the_real_bugs_scenarios_pass_on_pool_tokio() {
    for file in scenario_files() {
        let mut scenario = NetScenario::load(&file).unwrap_or_else(|e| panic!("{e}"));
        let report = run_scenario(&scenario);
        let Some(finding) = known::finding_for(&report) else {
            continue;
        };
        if finding.classification != Classification::RealBug {
            continue;
        }
        scenario.pool = PoolOptions::PoolTokio(Default::default());
        let on_ours = run_scenario(&scenario);
        assert_eq!(
            on_ours.outcome,
            NetOutcome::Pass,
            "{} on pool-tokio",
            file.display()
        );
    }
}

/// Crash seeds (the db host crashes and restarts) run twice in one process
/// give the same result, for every pool. Before the fake server kept its
/// connections in accept order, a second run could differ: tokio drops a
/// crashed runtime's tasks in an order set by process-wide task ids, and
/// each dropped socket's FIN draws its latency from the seeded RNG.
#[test]
fn crash_seeds_run_twice_in_one_process_give_the_same_result() {
    let crash_seeds: Vec<u64> = (0..)
        .filter(|&seed| {
            NetScenario::draw(seed, PoolKind::PoolTokio)
                .plan
                .events
                .iter()
                .any(|e| matches!(e.event, Event::CrashDb { .. }))
        })
        .take(3)
        .collect();
    for kind in PoolKind::ALL {
        for &seed in &crash_seeds {
            let first = run(seed, kind);
            assert!(first.faults.contains_key("db-crash"), "{kind} seed {seed}");
            assert_eq!(first, run(seed, kind), "{kind} seed {seed}");
        }
    }
}
