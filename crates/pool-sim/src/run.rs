//! One run: the safety phase from a driver, then the healed liveness phase,
//! with every outcome (pass, violation, panic) captured in a report.

use std::panic::{AssertUnwindSafe, catch_unwind};

use pool_core::{Config, Mutation, Pool, Stats, Time};

use crate::driver::{Driver, Generator, Healer};
use crate::invariant::{Invariant, Kind, Violation};
use crate::pool::SimPool;
use crate::scenario::script::snapshot;
use crate::scenario::{
    Check, Entry, Expect, Scenario, ScriptDriver, ScriptStop, StepMeta, StopKind,
};
use crate::swarm::{Rng, Swarm};
use crate::trace::{Keep, Line, Target};
use crate::transition::Step;
use crate::world::{Counters, MakePool, World, WorldConfig};

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Violated(Violation),
    /// The pool (or the simulator) panicked.
    Panicked {
        at: Time,
        message: String,
    },
    /// A scenario's script stopped: an assertion did not hold (exit 3, like
    /// a safety failure), or a step resolved to nothing (exit 1: the file
    /// is wrong).
    Script(ScriptStop),
}

/// The exit code of a run that panicked (the pool or the simulator).
pub const PANIC_EXIT_CODE: i32 = 5;

impl Kind {
    /// The process exit code of a run that broke an invariant of this kind:
    /// 3 safety, 4 liveness. Here, not in each command, so `cargo xtask sim`
    /// and `cargo xtask netsim` cannot drift apart.
    pub fn exit_code(self) -> i32 {
        match self {
            Kind::Safety => 3,
            Kind::Liveness => 4,
        }
    }
}

impl Outcome {
    /// The process exit code for this outcome: 0 pass, 3 safety, 4 liveness,
    /// 5 panic (1 and 2 are left for bad input and usage errors).
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Pass => 0,
            Outcome::Violated(v) => v.invariant.kind().exit_code(),
            Outcome::Panicked { .. } => PANIC_EXIT_CODE,
            Outcome::Script(stop) => match stop.kind {
                StopKind::Assertion => Kind::Safety.exit_code(),
                StopKind::Skipped | StopKind::Unresolved => 1,
            },
        }
    }

    pub fn invariant(&self) -> Option<Invariant> {
        match self {
            Outcome::Violated(v) => Some(v.invariant),
            _ => None,
        }
    }
}

/// How to run, and what to keep.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    pub keep: Keep,
    /// Keep the safety phase's steps (for `--record` and shrinking).
    pub record: bool,
    /// With `record`: also keep the assertions that hold at the end of the
    /// safety phase (`--record-asserts`), so the recording can fail.
    pub record_asserts: bool,
    /// Run with a seed report's bug put back (for a scenario: instead of
    /// the file's own). Needs the `mutations` feature.
    pub mutation: Option<Mutation>,
}

/// Everything a run produced.
#[derive(Debug)]
pub struct Report {
    pub outcome: Outcome,
    /// Virtual time at the end.
    pub end: Time,
    pub counters: Counters,
    /// Hash of the whole trace: equal runs have equal hashes.
    pub trace_hash: u64,
    pub trace_lines: u64,
    /// The last trace lines, rendered.
    pub tail: Vec<String>,
    /// Every trace line, when `Options::keep` asked for them.
    pub trace: Vec<Line>,
    /// The safety phase's steps and what each resolved to, when recording.
    pub recorded: Vec<(Step, Target)>,
    /// With `record_asserts`: the assertions that held at the end of the
    /// safety phase, and when.
    pub asserts: Option<(Time, Vec<Vec<Check>>)>,
    /// The stats of the first pool at the end (the only one, in most runs).
    pub pool_stats: Stats,
    /// Pools made during the run.
    pub pools: usize,
}

/// Run seed `seed` with `events` safety-phase steps against the reference
/// pool. Returns the options the seed drew and the report.
pub fn run_seed(seed: u64, events: u64, options: Options) -> (Swarm, Report) {
    run_seed_with(seed, events, options, reference_pools(options.mutation))
}

/// Run seed `seed` against any pool: `make` builds each pool from the config
/// the seed drew.
pub fn run_seed_with<P: SimPool>(
    seed: u64,
    events: u64,
    options: Options,
    make: MakePool<P>,
) -> (Swarm, Report) {
    let mut rng = Rng::new(seed);
    let swarm = Swarm::draw(&mut rng, events);
    let mut generator = Generator::new(swarm.clone(), rng, events);
    let report = run(
        make,
        swarm.pool.clone(),
        swarm.world.clone(),
        &mut generator,
        options,
    );
    (swarm, report)
}

/// Run a seed against the reference pool, recording its safety phase as a
/// scenario that replays it without the RNG (`expect` is what it did).
pub fn record_seed(seed: u64, events: u64, options: Options) -> (Scenario, Report) {
    let options = Options {
        record: true,
        ..options
    };
    let (swarm, report) = run_seed(seed, events, options);
    let scenario = Scenario {
        name: format!("seed-{seed}"),
        about: String::new(),
        expect: match report.outcome.invariant() {
            Some(invariant) => Expect::Violation(invariant),
            None => Expect::Pass,
        },
        mutation: options.mutation,
        seed: Some(seed),
        pool: swarm.pool,
        world: swarm.world,
        steps: report.recorded.iter().map(|(s, _)| s.clone()).collect(),
        meta: Vec::new(),
    };
    let mut scenario = scenario;
    scenario.mark_skips(report.recorded.iter().map(|(_, target)| target));
    if let Some((at, groups)) = &report.asserts {
        for checks in groups {
            scenario.steps.push(Step {
                at: *at,
                transition: crate::transition::Transition::Wait,
            });
            scenario.meta.push(StepMeta {
                entry: Entry::Assert(checks.clone()),
                ..StepMeta::default()
            });
        }
    }
    (scenario, report)
}

/// Replay a scenario against the reference pool (with the file's mutation,
/// unless `options` names one).
pub fn run_scenario(scenario: &Scenario, options: Options) -> Report {
    let options = Options {
        mutation: options.mutation.or(scenario.mutation),
        ..options
    };
    run_steps(reference_pools(options.mutation), scenario, options)
}

/// Replay a scenario's steps against any pool.
pub fn run_steps<P: SimPool>(make: MakePool<P>, scenario: &Scenario, options: Options) -> Report {
    let mut script = ScriptDriver::new(&scenario.steps, &scenario.meta);
    run(
        make,
        scenario.pool.clone(),
        scenario.world.clone(),
        &mut script,
        options,
    )
}

/// Makes reference pools, with `mutation` put back.
pub fn reference_pools(mutation: Option<Mutation>) -> MakePool<Pool> {
    assert!(
        mutation.is_none() || Mutation::available(),
        "this build has no mutations: build with the `mutations` feature (the xtask does)"
    );
    Box::new(move |now: Time, config: &Config| {
        #[cfg_attr(not(feature = "mutations"), allow(unused_mut))]
        let mut pool = Pool::new(now, config.clone());
        #[cfg(feature = "mutations")]
        pool.set_mutation(mutation);
        pool
    })
}

/// Run `driver`'s steps (the safety phase), then heal and run the liveness
/// phase, checking every invariant after every event.
pub fn run<P: SimPool>(
    make: MakePool<P>,
    pool_config: Config,
    world_config: WorldConfig,
    driver: &mut dyn Driver<P>,
    options: Options,
) -> Report {
    let mut recorded = Vec::new();
    let mut asserts = None;
    let mut world_slot: Option<World<P>> = None;
    let result = catch_unwind(AssertUnwindSafe(|| {
        let world = world_slot.insert(World::new(
            make,
            pool_config,
            world_config,
            options.mutation,
            options.keep,
        ));
        while world.violation().is_none() {
            let Some(mut step) = driver.next(world) else {
                break;
            };
            if options.record {
                // Recorded as the world took it (each index within its
                // candidates), so the file replays strictly.
                world.advance_to(step.at);
                step.transition = world.in_range(&step.transition);
            }
            let target = world.apply(&step);
            driver.applied(world, &target);
            if options.record {
                recorded.push((step, target));
            }
            if driver.stop().is_some() {
                return;
            }
        }
        if world.violation().is_some() {
            return;
        }
        if options.record && options.record_asserts {
            asserts = Some((world.now(), snapshot(world)));
        }
        world.heal();
        let mut healer = Healer::new(world);
        while world.violation().is_none() {
            let Some(step) = healer.next(world) else {
                break;
            };
            world.apply(&step);
        }
        world.finish(healer.end());
    }));
    let Some(world) = world_slot else {
        // The pool panicked while the world was being built around it.
        let message = result
            .err()
            .map(|p| panic_message(p.as_ref()))
            .unwrap_or_default();
        return Report {
            outcome: Outcome::Panicked {
                at: Time::ZERO,
                message,
            },
            end: Time::ZERO,
            counters: Counters::default(),
            trace_hash: 0,
            trace_lines: 0,
            tail: Vec::new(),
            trace: Vec::new(),
            recorded,
            asserts,
            pool_stats: Stats::default(),
            pools: 0,
        };
    };
    let outcome = match result {
        Err(payload) => Outcome::Panicked {
            at: world.now(),
            message: panic_message(payload.as_ref()),
        },
        Ok(()) => match (world.violation(), driver.stop()) {
            (Some(v), _) => Outcome::Violated(v.clone()),
            (None, Some(stop)) => Outcome::Script(stop.clone()),
            (None, None) => Outcome::Pass,
        },
    };
    let end = world.now();
    let counters = world.counters().clone();
    let pool_stats = world
        .pools()
        .first()
        .map(|p| p.pool.stats())
        .unwrap_or_default();
    let pools = world.pools().len();
    let trace = world.into_trace();
    Report {
        outcome,
        end,
        counters,
        trace_hash: trace.hash(),
        trace_lines: trace.len(),
        tail: trace.tail().map(|l| l.to_string()).collect(),
        trace: trace.into_all(),
        recorded,
        asserts,
        pool_stats,
        pools,
    }
}

/// A panic's message, whatever its payload type.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}
