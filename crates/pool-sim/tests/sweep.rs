//! A bounded sweep: the reference core passes 2,000 seeds.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use pool_sim::run::{Options, Outcome, run_seed};

const SEEDS: u64 = 2_000;
const EVENTS: u64 = 1_000;

#[test]
fn reference_core_passes_a_bounded_sweep() {
    let next = AtomicU64::new(0);
    let failures = Mutex::new(Vec::new());
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= SEEDS {
                        break;
                    }
                    let (_, report) = run_seed(seed, EVENTS, Options::default());
                    if report.outcome != Outcome::Pass {
                        failures.lock().unwrap().push((seed, report.outcome));
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap();
    failures.sort_by_key(|(seed, _)| *seed);
    assert!(
        failures.is_empty(),
        "{} of {SEEDS} seeds failed; first: {:?}\nreproduce: cargo xtask sim --seed {}",
        failures.len(),
        failures[0],
        failures[0].0
    );
}
