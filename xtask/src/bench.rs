//! `cargo xtask bench`: the simulator's speed, measured (never asserted in a
//! test: CI must not depend on wall-clock speed).

use std::process::Command;
use std::time::{Duration, Instant};

use pool_sim::shrink::{Keeps, shrink};
use pool_sim::{Mutation, Options, Scenario};

use crate::hunt::{MAX_SEEDS, hunt};
use crate::seeds;
use crate::sim::DEFAULT_EVENTS;
use crate::{cargo, project_root};

/// Measure, on one core with every checker on: simulated events per second
/// and seeds per second, the replay time of a scenario, shrink time, and the
/// hunt time of each mutation. Builds and runs itself in release mode.
#[derive(clap::Args)]
pub struct Args {
    /// Seeds for the throughput runs.
    #[arg(long, default_value_t = 2_000)]
    seeds: u64,
    /// Only the pools' get-and-return row (pool-tokio, bb8, deadpool).
    #[arg(long)]
    pools_only: bool,
}

pub fn run(args: Args) -> i32 {
    if cfg!(debug_assertions) {
        // Figures from an unoptimised build would mean nothing: rerun in
        // release mode.
        let status = Command::new(cargo())
            .args([
                "run",
                "--release",
                "--quiet",
                "--package",
                "xtask",
                "--",
                "bench",
            ])
            .arg("--seeds")
            .arg(args.seeds.to_string())
            .args(args.pools_only.then_some("--pools-only"))
            .current_dir(project_root())
            .status();
        return match status {
            Ok(s) => s.code().unwrap_or(1),
            Err(e) => {
                eprintln!("error: cannot run the release build: {e}");
                1
            }
        };
    }
    if args.pools_only {
        pools::row();
        return 0;
    }
    println!("bench: release build, one core (one thread), every checker on");
    println!("{:<52} {:>16}", "measure", "figure");

    // Throughput: seeds 0..N, 1,000 safety-phase events each.
    let seeds = args.seeds;
    let (events, wall) = timed(|| {
        let mut events = 0;
        for seed in 0..seeds {
            let (_, report) = pool_sim::run_seed(seed, DEFAULT_EVENTS, Options::default());
            events += seeds::events_in(&report.counters);
        }
        events
    });
    row(
        &format!("events/s (seeds 0..{seeds}, {DEFAULT_EVENTS} events each)"),
        format!("{:.0}", events as f64 / wall),
    );
    row("seeds/s (same run)", format!("{:.0}", seeds as f64 / wall));

    // Replay: a recorded 1,000-step seed, and a hand-written scenario.
    let (recorded, _) = pool_sim::run::record_seed(7, DEFAULT_EVENTS, Options::default());
    let reps = 200;
    let (_, wall) = timed(|| {
        for _ in 0..reps {
            pool_sim::run_scenario(&recorded, Options::default());
        }
    });
    row(
        &format!("replay of a {}-step recorded seed", recorded.steps.len()),
        format!("{:.3} ms", wall * 1e3 / f64::from(reps)),
    );
    let bun = project_root().join("scenarios/seed-001-bun-ready-then-fin.toml");
    if let Ok(scenario) = Scenario::load(&bun) {
        let (_, wall) = timed(|| {
            for _ in 0..reps {
                pool_sim::run_scenario(&scenario, Options::default());
            }
        });
        row(
            "replay of scenarios/seed-001-bun-ready-then-fin.toml",
            format!("{:.3} ms", wall * 1e3 / f64::from(reps)),
        );
    }

    // The same workload, pure and under turmoil.
    let (pure, turmoil, with_queries) = same_workload(250);
    row(
        "same workload, pure simulator: events/s",
        format!("{pure:.0}"),
    );
    row(
        "same workload, turmoil + tokio-postgres: events/s",
        format!("{turmoil:.0}"),
    );
    row(
        "ratio, pure : turmoil",
        format!("{:.1} : 1", pure / turmoil),
    );
    row(
        "turmoil, a SELECT 1 per cycle: events/s",
        format!("{with_queries:.0}"),
    );
    row(
        "ratio, pure : turmoil with queries",
        format!("{:.0} : 1", pure / with_queries),
    );

    pools::row();

    // Hunt and shrink, per mutation, on one core.
    for mutation in Mutation::ALL {
        let h = hunt(mutation, MAX_SEEDS, DEFAULT_EVENTS, 1);
        let found = match &h.found {
            Some((seed, _)) => format!("seed {seed}"),
            None => "ESCAPED".to_owned(),
        };
        row(
            &format!("hunt {mutation}"),
            format!("{:.3} s ({found}, {} seeds)", h.seconds, h.seeds_tried),
        );
        if let (Some((seed, outcome)), true) = (&h.found, h.caught_as_expected()) {
            let options = Options {
                mutation: Some(mutation),
                ..Options::default()
            };
            let (scenario, _) = pool_sim::run::record_seed(*seed, DEFAULT_EVENTS, options);
            let keeps = Keeps {
                invariant: outcome.invariant().expect("caught"),
                mutation: Some(mutation),
            };
            let (shrunk, wall) = timed(|| shrink(&scenario, keeps));
            if let Some(shrunk) = shrunk {
                row(
                    &format!("  shrink seed {seed}"),
                    format!(
                        "{:.3} s ({} -> {} steps, {} runs)",
                        wall,
                        shrunk.steps_before,
                        shrunk.scenario.steps.len(),
                        shrunk.runs
                    ),
                );
            }
        }
    }
    0
}

fn row(measure: &str, figure: String) {
    println!("{measure:<52} {figure:>16}");
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    #[allow(clippy::disallowed_methods)] // a benchmark measures wall time
    let started = Instant::now();
    let out = f();
    (out, started.elapsed().as_secs_f64())
}

/// Clients of the same-workload comparison, one per pooled connection; one
/// constant so the pure and the turmoil run cannot drift apart.
const CLIENTS: u32 = 4;

/// The same workload through the pure simulator and through turmoil: one
/// pool of 4, 4 clients, each doing `rounds` get/hold 1 ms/release cycles.
/// An event is one pool input (an acquire or a release). Returns
/// (pure events/s, turmoil events/s, turmoil events/s with a `SELECT 1`
/// sent over the simulated network in every cycle).
fn same_workload(rounds: u64) -> (f64, f64, f64) {
    use pool_core::{Config, Time};
    use pool_sim::{Step, Transition, WorldConfig};
    let config = Config {
        max_size: CLIENTS as usize,
        ..Config::default()
    };
    // Pure: the cycles as transitions (the first round connects each conn).
    let mut steps = Vec::new();
    for round in 0..rounds {
        let at = Time::from_millis(round * 2);
        for client in 0..CLIENTS {
            steps.push(Step {
                at,
                transition: Transition::Acquire {
                    client,
                    setting: None,
                    timeout_ms: None,
                },
            });
        }
        if round == 0 {
            for _ in 0..CLIENTS {
                steps.push(Step {
                    at,
                    transition: Transition::ConnectOk { attempt: 0 },
                });
                steps.push(Step {
                    at,
                    transition: Transition::Deliver { signal: 0 },
                });
            }
        }
        for client in 0..CLIENTS {
            steps.push(Step {
                at: at.plus_ms(1),
                transition: Transition::Release { client },
            });
        }
    }
    let scenario = Scenario {
        name: "bench".into(),
        about: String::new(),
        expect: pool_sim::Expect::Pass,
        mutation: None,
        seed: None,
        pool: config.clone(),
        world: WorldConfig {
            clients: CLIENTS,
            ..WorldConfig::default()
        },
        steps,
        meta: Vec::new(),
    };
    let events = (rounds * u64::from(CLIENTS) * 2) as f64;
    let reps = 20;
    let (_, wall) = timed(|| {
        for _ in 0..reps {
            pool_sim::run_scenario(&scenario, Options::default());
        }
    });
    let pure = events * f64::from(reps) / wall;
    let turmoil = events / turmoil_workload(rounds, config.clone(), false);
    let with_queries = events / turmoil_workload(rounds, config, true);
    (pure, turmoil, with_queries)
}

/// Seconds of wall time for the workload in turmoil: pool-tokio with
/// tokio-postgres against the fake server.
fn turmoil_workload(rounds: u64, config: pool_core::Config, query: bool) -> f64 {
    let (_, wall) = timed(|| {
        let mut sim = turmoil::Builder::new()
            .rng_seed(1)
            .simulation_duration(Duration::from_secs(3_600))
            .min_message_latency(Duration::from_millis(1))
            .max_message_latency(Duration::from_millis(1))
            .build();
        let server = pool_netsim::Server::new(pool_netsim::ServerConfig::default());
        sim.host("db", move || server.clone().run());
        let config = config.clone();
        sim.client("app", async move {
            let pool = pool_tokio::Pool::builder(pool_netsim::manager::PgManager::new("bench"))
                .config(config)
                .build();
            let tasks: Vec<_> = (0..CLIENTS)
                .map(|_| {
                    let pool = pool.clone();
                    tokio::spawn(async move {
                        for _ in 0..rounds {
                            let conn = pool.get().await.expect("a conn");
                            if query {
                                conn.client.simple_query("SELECT 1").await.expect("a row");
                            }
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            drop(conn);
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("the client ran");
            }
            Ok(())
        });
        sim.run().expect("the simulation ran");
    });
    wall
}

/// Our pool against theirs: get-and-return round trips per second.
mod pools {
    use std::future::Future;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Duration;

    use super::timed;

    /// How long each point runs.
    const POINT: Duration = Duration::from_millis(400);
    const TASKS: [usize; 4] = [1, 2, 8, 64];
    const SIZES: [usize; 2] = [4, 32];

    /// pool-tokio's manager: connects at once, never closes.
    struct NoIo;

    #[derive(Debug, thiserror::Error)]
    #[error("never")]
    struct Never;

    impl pool_tokio::Manager for NoIo {
        type Conn = ();
        type Error = Never;
        async fn connect(
            &self,
            _: Option<pool_tokio::Setting>,
        ) -> Result<((), pool_tokio::Closed), Never> {
            Ok(((), Box::pin(std::future::pending()) as pool_tokio::Closed))
        }
        async fn apply_setting(
            &self,
            _: &mut (),
            _: Option<pool_tokio::Setting>,
        ) -> Result<(), Never> {
            Ok(())
        }
    }

    impl bb8::ManageConnection for NoIo {
        type Connection = ();
        type Error = Never;
        async fn connect(&self) -> Result<(), Never> {
            Ok(())
        }
        async fn is_valid(&self, _: &mut ()) -> Result<(), Never> {
            Ok(())
        }
        fn has_broken(&self, _: &mut ()) -> bool {
            false
        }
    }

    impl deadpool::managed::Manager for NoIo {
        type Type = ();
        type Error = Never;
        async fn create(&self) -> Result<(), Never> {
            Ok(())
        }
        async fn recycle(
            &self,
            _: &mut (),
            _: &deadpool::managed::Metrics,
        ) -> deadpool::managed::RecycleResult<Never> {
            Ok(())
        }
    }

    /// `tasks` tasks each getting and returning a connection in a loop for
    /// `POINT`; round trips per second.
    fn measure<F, Fut>(rt: &tokio::runtime::Runtime, tasks: usize, get_and_return: F) -> f64
    where
        F: Fn() -> Fut + Clone + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (_, wall) = timed(|| {
            rt.block_on(async {
                let handles: Vec<_> = (0..tasks)
                    .map(|_| {
                        let (f, done, stop) = (get_and_return.clone(), done.clone(), stop.clone());
                        tokio::spawn(async move {
                            let mut n = 0;
                            while !stop.load(Ordering::Relaxed) {
                                f().await;
                                n += 1;
                            }
                            done.fetch_add(n, Ordering::Relaxed);
                        })
                    })
                    .collect();
                // Real time: a benchmark measures wall time.
                std::thread::sleep(POINT);
                stop.store(true, Ordering::Relaxed);
                for h in handles {
                    h.await.expect("the task ran");
                }
            })
        });
        done.load(Ordering::Relaxed) as f64 / wall
    }

    /// The pool row: every pool, size and task count.
    pub fn row() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        println!(
            "pools: get-and-return round trips/s, multi-thread runtime (2 workers), manager with no IO, {} ms a point",
            POINT.as_millis()
        );
        println!(
            "{:<6} {:>5}  {:>12} {:>12} {:>12}  pool-tokio / best",
            "size", "tasks", "pool-tokio", "bb8", "deadpool"
        );
        for size in SIZES {
            let ours = rt.block_on(async {
                pool_tokio::Pool::builder(NoIo)
                    .max_size(size)
                    .acquire_timeout(Duration::from_secs(30))
                    .build()
            });
            let theirs_bb8 = rt.block_on(async {
                bb8::Pool::builder()
                    .max_size(size as u32)
                    .build_unchecked(NoIo)
            });
            let theirs_deadpool: deadpool::managed::Pool<NoIo> =
                deadpool::managed::Pool::builder(NoIo)
                    .max_size(size)
                    .build()
                    .expect("a pool");
            for tasks in TASKS {
                let p = ours.clone();
                let a = measure(&rt, tasks, move || {
                    let p = p.clone();
                    async move { drop(p.get().await.expect("a conn")) }
                });
                let p = theirs_bb8.clone();
                let b = measure(&rt, tasks, move || {
                    let p = p.clone();
                    async move { drop(p.get().await.expect("a conn")) }
                });
                let p = theirs_deadpool.clone();
                let c = measure(&rt, tasks, move || {
                    let p = p.clone();
                    async move { drop(p.get().await.expect("a conn")) }
                });
                println!(
                    "{size:<6} {tasks:>5}  {a:>12.0} {b:>12.0} {c:>12.0}  {:.2}",
                    a / b.max(c)
                );
            }
        }
    }
}
