//! A bounded sweep: the reference core passes 2,000 seeds. It is also the
//! oracle of `cargo xtask mutants` (the simulator judging each mutant of
//! pool-core), which sets `POOL_SIM_SWEEP_SEEDS`; it stops at the first
//! failing seed, so a caught mutant costs little.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pool_sim::run::{Options, Outcome, run_seed};

const SEEDS: u64 = 2_000;
const EVENTS: u64 = 1_000;

fn seeds() -> u64 {
    match std::env::var("POOL_SIM_SWEEP_SEEDS") {
        Ok(n) => n
            .parse()
            .unwrap_or_else(|_| panic!("POOL_SIM_SWEEP_SEEDS={n:?} is not a number of seeds")),
        Err(_) => SEEDS,
    }
}

#[test]
fn reference_core_passes_a_bounded_sweep() {
    let seeds = seeds();
    let next = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let failures = Mutex::new(Vec::new());
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= seeds {
                        break;
                    }
                    let (_, report) = run_seed(seed, EVENTS, Options::default());
                    if report.outcome != Outcome::Pass {
                        failed.store(true, Ordering::Relaxed);
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
        "a seed of 0..{seeds} failed: {:?}\nreproduce: cargo xtask sim --seed {}",
        failures[0],
        failures[0].0
    );
}
