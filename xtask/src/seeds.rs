//! Seeds across cores: the one parallel loop behind `sweep` and `hunt`.
//! Each seed is one deterministic run; parallelism is only across seeds.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;

use pool_sim::world::Counters;
use pool_sim::{Mutation, Options, Outcome};

/// One seed's result.
pub struct SeedResult {
    pub seed: u64,
    pub outcome: Outcome,
    /// Transitions plus timer firings.
    pub events: u64,
}

/// What a batch of seeds did.
#[derive(Default)]
pub struct Batch {
    /// Seeds run (with `first_failure`, those after it were skipped).
    pub ran: u64,
    pub events: u64,
    /// Failures, lowest seed first.
    pub failures: Vec<SeedResult>,
}

/// Run `seeds` (in order of index) on `jobs` threads. `each` sees every
/// result on the calling thread, in completion order. With `first_failure`,
/// no seed after the lowest failing one found so far is started, so the
/// lowest failing seed is exact and every seed before it ran.
pub fn run(
    seeds: &[u64],
    events: u64,
    mutation: Option<Mutation>,
    jobs: usize,
    first_failure: bool,
    mut each: impl FnMut(&SeedResult),
) -> Batch {
    // Each run catches its own panics; keep their messages off the screen.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let next = AtomicUsize::new(0);
    let lowest_failure = AtomicU64::new(u64::MAX);
    let (tx, rx) = mpsc::channel::<SeedResult>();
    let options = Options {
        mutation,
        ..Options::default()
    };
    let mut batch = Batch::default();
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            let tx = tx.clone();
            let (next, lowest_failure) = (&next, &lowest_failure);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&seed) = seeds.get(i) else { break };
                    if first_failure && seed > lowest_failure.load(Ordering::Relaxed) {
                        break;
                    }
                    let (_, report) = pool_sim::run_seed(seed, events, options);
                    if report.outcome != Outcome::Pass {
                        lowest_failure.fetch_min(seed, Ordering::Relaxed);
                    }
                    let result = SeedResult {
                        seed,
                        events: events_in(&report.counters),
                        outcome: report.outcome,
                    };
                    if tx.send(result).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for result in rx {
            batch.ran += 1;
            batch.events += result.events;
            each(&result);
            if result.outcome != Outcome::Pass {
                batch.failures.push(result);
            }
        }
    });
    std::panic::set_hook(default_hook);
    batch.failures.sort_by_key(|f| f.seed);
    batch
}

/// A run's events, as throughput figures count them: transitions plus timer
/// firings.
pub fn events_in(counters: &Counters) -> u64 {
    counters.steps + counters.timeouts
}

/// Every core, unless `jobs` says otherwise.
pub fn jobs(jobs: Option<usize>) -> usize {
    jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1)
}
