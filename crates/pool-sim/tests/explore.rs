//! Snapshots, canonical hashes and the breadth-first explorer: a copy runs
//! as the original does, equivalent states meet, different ones do not,
//! and the explorer's result is deterministic and replays.

use std::collections::VecDeque;
use std::path::Path;

use pool_core::{Command, Config, ConnId, ConnState, Input, InputError, Pool, Stats, Time};
use pool_sim::explore::{Moves, Progress, Settings, WorldFile, explore, scenario_of};
use pool_sim::run::{Options, reference_pools, run_scenario};
use pool_sim::world::Canonical;
use pool_sim::{
    Expect, Keep, MakePool, Mutation, Outcome, SimPool, Step, Transition, World, WorldConfig,
};

fn config() -> Config {
    Config::without_timers(2)
}

fn world(clients: u32) -> World<Pool> {
    World::new(
        reference_pools(None),
        config(),
        WorldConfig {
            clients,
            ..WorldConfig::default()
        },
        None,
        Keep::Tail,
    )
}

fn at(ms: u64, transition: Transition) -> Step {
    Step {
        at: Time::from_millis(ms),
        transition,
    }
}

fn acquire(client: u32) -> Transition {
    Transition::Acquire {
        client,
        setting: None,
        timeout_ms: None,
    }
}

fn hash(w: &World<Pool>, canonical: Canonical) -> u128 {
    w.state_hash(canonical)
        .expect("pool-core's pool hashes its state")
}

const FULL: Canonical = Canonical {
    renumber: true,
    symmetry: true,
};
const NO_SYMMETRY: Canonical = Canonical {
    renumber: true,
    symmetry: false,
};
const RAW: Canonical = Canonical {
    renumber: false,
    symmetry: false,
};

#[test]
fn a_snapshot_runs_as_the_original_does() {
    let mut w = world(2);
    for step in [
        at(0, acquire(0)),
        at(0, acquire(1)),
        at(1, Transition::ConnectOk { attempt: 0 }),
        at(2, Transition::Deliver { signal: 0 }),
    ] {
        w.apply(&step);
    }
    let mut copy = w.snapshot().expect("pool-core's pool can be copied");
    assert_eq!(hash(&w, FULL), hash(&copy, FULL));
    assert_eq!(hash(&w, RAW), hash(&copy, RAW));
    let rest = [
        at(3, Transition::Release { client: 0 }),
        at(4, Transition::ConnectOk { attempt: 0 }),
        at(4, Transition::Deliver { signal: 0 }),
        at(5, Transition::Kill { session: 1 }),
    ];
    for step in &rest {
        let a = w.apply(step);
        let b = copy.apply(step);
        assert_eq!(a, b, "the copy resolves {step:?} as the original does");
        assert_eq!(hash(&w, FULL), hash(&copy, FULL));
        assert_eq!(hash(&w, RAW), hash(&copy, RAW));
    }
    assert_eq!(w.counters().steps, copy.counters().steps);
    assert_eq!(w.pools()[0].pool.stats(), copy.pools()[0].pool.stats());
    // The original moved on; a copy taken before did not.
    let before = w.snapshot().unwrap();
    w.apply(&at(6, Transition::Release { client: 1 }));
    assert_ne!(hash(&w, FULL), hash(&before, FULL));
}

#[test]
fn equivalent_states_with_other_ids_meet() {
    // A: client 0 asks; c0 opens for its request r0.
    let mut a = world(2);
    a.apply(&at(0, acquire(0)));
    // B: the same, after a first connection came, was tainted and went:
    // now c1 opens for r1, and the counters differ.
    let mut b = world(2);
    for step in [
        at(0, acquire(0)),
        at(0, Transition::ConnectOk { attempt: 0 }),
        at(0, Transition::Deliver { signal: 0 }),
        at(0, Transition::Taint { client: 0 }),
        at(0, acquire(0)),
    ] {
        assert!(!matches!(b.apply(&step), pool_sim::Target::Skipped(_)));
    }
    assert_ne!(hash(&a, RAW), hash(&b, RAW), "the ids differ");
    assert_eq!(hash(&a, NO_SYMMETRY), hash(&b, NO_SYMMETRY));
    assert_eq!(hash(&a, FULL), hash(&b, FULL));
    // C: client 1 asks instead: the same state with the clients swapped.
    let mut c = world(2);
    c.apply(&at(0, acquire(1)));
    assert_ne!(hash(&a, NO_SYMMETRY), hash(&c, NO_SYMMETRY));
    assert_eq!(hash(&a, FULL), hash(&c, FULL));
    // The same state later in time: times are relative to now (and the
    // watchdog's grid, 2 s by default, is where it was).
    let mut d = world(2);
    d.apply(&at(0, Transition::Wait));
    d.apply(&at(2_000, acquire(0)));
    let mut e = world(2);
    e.apply(&at(7, acquire(0)));
    assert_ne!(hash(&a, FULL), hash(&e, FULL), "the watchdog's grid moved");
    assert_eq!(hash(&a, FULL), hash(&d, FULL));
    assert_ne!(hash(&a, RAW), hash(&d, RAW));
}

#[test]
fn different_states_do_not_meet() {
    let fresh = world(2);
    let mut one = world(2);
    one.apply(&at(0, acquire(0)));
    let mut two = world(2);
    two.apply(&at(0, acquire(0)));
    two.apply(&at(0, acquire(1)));
    let mut answered = world(2);
    answered.apply(&at(0, acquire(0)));
    answered.apply(&at(0, Transition::ConnectOk { attempt: 0 }));
    let hashes = [&fresh, &one, &two, &answered].map(|w| hash(w, FULL));
    for i in 0..hashes.len() {
        for j in i + 1..hashes.len() {
            assert_ne!(hashes[i], hashes[j], "states {i} and {j}");
        }
    }
}

/// pool-core's pool without the optional capability.
struct Opaque(Pool);

impl SimPool for Opaque {
    fn handle(&mut self, now: Time, input: Input) -> Result<(), InputError> {
        self.0.handle(now, input)
    }
    fn handle_timeout(&mut self, now: Time) {
        self.0.handle_timeout(now)
    }
    fn poll_command(&mut self) -> Option<Command> {
        self.0.poll_command()
    }
    fn poll_timeout(&self) -> Option<Time> {
        self.0.poll_timeout()
    }
    fn stats(&self) -> Stats {
        self.0.stats()
    }
    fn conns(&self, out: &mut Vec<(ConnId, ConnState)>) {
        out.extend(self.0.conns())
    }
}

fn settings(depth: u32) -> Settings {
    Settings {
        depth,
        canonical: Canonical::default(),
        dedup: true,
    }
}

#[test]
fn a_pool_without_the_capability_is_refused_with_a_reason() {
    let make: MakePool<Opaque> =
        Box::new(|now, config: &Config| Opaque(Pool::new(now, config.clone())));
    let result = explore(
        make,
        config(),
        WorldConfig::default(),
        &Moves::default(),
        None,
        settings(3),
        &mut |_| true,
    );
    let error = result.expect_err("an opaque pool cannot be explored");
    assert!(error.to_string().contains("snapshot"), "{error}");
}

fn moves() -> Moves {
    Moves {
        ready_then_fins: 1,
        kills: 1,
        echoes: 1,
        taint: true,
        cancel: true,
        ..Moves::default()
    }
}

fn run(
    mutation: Option<Mutation>,
    depth: u32,
    settings_of: fn(u32) -> Settings,
) -> pool_sim::explore::Explored {
    explore(
        reference_pools(mutation),
        config(),
        WorldConfig {
            clients: 2,
            ..WorldConfig::default()
        },
        &moves(),
        mutation,
        settings_of(depth),
        &mut |_| true,
    )
    .expect("pool-core's pool can be explored")
}

#[test]
fn the_reference_pool_passes_and_the_search_is_deterministic() {
    let first = run(None, 6, settings);
    assert!(first.found.is_none(), "{:?}", first.found);
    assert_eq!(first.progress.depth_completed, 6);
    assert!(first.progress.unique > 100, "{:?}", first.progress);
    let second = run(None, 6, settings);
    assert_eq!(first.progress, second.progress);
}

#[test]
fn dedup_and_symmetry_keep_fewer_states() {
    let full: Progress = run(None, 5, settings).progress;
    let no_symmetry = run(None, 5, |depth| Settings {
        canonical: NO_SYMMETRY,
        ..settings(depth)
    })
    .progress;
    let none = run(None, 5, |depth| Settings {
        dedup: false,
        ..settings(depth)
    })
    .progress;
    assert!(full.unique < no_symmetry.unique, "{full:?} {no_symmetry:?}");
    assert!(no_symmetry.unique < none.unique, "{no_symmetry:?} {none:?}");
}

#[test]
fn the_shortest_path_to_a_mutation_replays() {
    if !Mutation::available() {
        return; // needs the `mutations` feature (cargo xtask explore has it)
    }
    let mutation = Mutation::AcceptStaleConnect;
    let result = run(Some(mutation), 8, settings);
    let found = result.found.expect("explore finds accept-stale-connect");
    assert_eq!(found.invariant, Some(pool_sim::Invariant::GhostIdle));
    // acquire, ready-then-fin, the Closed, then the stale Connected.
    assert_eq!(found.steps.len(), 4, "{:?}", found.steps);
    let scenario = scenario_of(
        "t",
        "",
        &config(),
        &WorldConfig {
            clients: 2,
            ..WorldConfig::default()
        },
        Some(mutation),
        &found,
    );
    let text = scenario.to_toml("", None);
    let parsed = pool_sim::Scenario::parse(Path::new("explored.toml"), &text).unwrap();
    assert_eq!(
        parsed.expect,
        Expect::Violation(pool_sim::Invariant::GhostIdle)
    );
    let report = run_scenario(&parsed, Options::default());
    assert_eq!(
        report.outcome.invariant(),
        Some(pool_sim::Invariant::GhostIdle),
        "{:?}",
        report.outcome
    );
    // Without the bug, the same steps pass.
    let mut clean = parsed.clone();
    clean.mutation = None;
    assert_eq!(
        run_scenario(&clean, Options::default()).outcome,
        Outcome::Pass
    );
}

#[test]
fn every_named_world_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../worlds");
    let mut names = VecDeque::new();
    for entry in std::fs::read_dir(&dir).expect("worlds/ is readable") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let file = WorldFile::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(file.depth > 0, "{}: a depth to explore to", path.display());
            names.push_back(file.name);
        }
    }
    assert!(!names.is_empty());
}

#[test]
fn a_path_to_a_liveness_violation_replays_through_the_liveness_phase() {
    if !Mutation::available() {
        return; // needs the `mutations` feature (cargo xtask explore has it)
    }
    // The floor is only owed once faults are healed: the liveness phase
    // the explorer runs on a copy of every state judges it.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../worlds/timers.toml");
    let file = WorldFile::load(&path).unwrap();
    assert!(file.moves.liveness);
    let mutation = Mutation::BackoffNeverRefills;
    let result = pool_sim::explore::explore_reference(
        file.pool.clone(),
        file.world.clone(),
        &file.moves,
        Some(mutation),
        settings(file.depth),
        &mut |_| true,
    )
    .unwrap();
    let found = result.found.expect("explore finds backoff-never-refills");
    assert!(found.in_liveness, "{found:?}");
    assert_eq!(found.invariant, Some(pool_sim::Invariant::FloorNotRestored));
    let scenario = scenario_of("t", "", &file.pool, &file.world, Some(mutation), &found);
    let parsed =
        pool_sim::Scenario::parse(Path::new("explored.toml"), &scenario.to_toml("", None)).unwrap();
    let report = run_scenario(&parsed, Options::default());
    assert_eq!(
        report.outcome.invariant(),
        Some(pool_sim::Invariant::FloorNotRestored),
        "{:?}",
        report.outcome
    );
    let mut clean = parsed.clone();
    clean.mutation = None;
    assert_eq!(
        run_scenario(&clean, Options::default()).outcome,
        Outcome::Pass
    );
}
