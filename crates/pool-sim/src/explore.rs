//! Breadth-first exploration of a small world: every enabled transition at
//! every state, every check after every transition, equivalent states
//! visited once, and the shortest failing path as a scenario.
//!
//! Seeds sample; for a small enough world the state space is finite and an
//! explorer can cover it to a depth. The world is a value (`World::snapshot`)
//! with a canonical hash (`World::state_hash`), so the search is the
//! textbook one (stateright's, TLC's): a frontier per depth, a visited set of
//! hashes, a parent pointer per state. Faults are budgeted and time moves
//! only to the next timer or by a few fixed steps, so the space stays
//! finite. Breadth-first order makes the first violation found one of the
//! shortest.
//!
//! No wall clock here: the caller gets a progress callback and decides when
//! to stop (`cargo xtask explore --seconds`).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use pool_core::{Config, Mutation};
use serde::{Deserialize, Serialize};

use crate::driver::{Driver, Healer};
use crate::invariant::Invariant;
use crate::pool::SimPool;
use crate::scenario::{Expect, Scenario, ScenarioError};
use crate::trace::{Keep, Target};
use crate::transition::{Step, Transition};
use crate::world::{
    Canonical, ClientState, HashScratch, MakePool, Service, SignalKind, World, WorldConfig,
};

/// A named small world (`worlds/NAME.toml`): the world, the pool's config,
/// what the explorer may do in it, and how deep it is explored.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorldFile {
    pub name: String,
    #[serde(default)]
    pub about: String,
    /// The depth it is explored to by default (and in CI).
    pub depth: u32,
    /// The mutations an exploration to `depth` must find (CI holds it to
    /// this list).
    #[serde(default)]
    pub finds: Vec<String>,
    #[serde(default)]
    pub pool: Config,
    #[serde(default)]
    pub world: WorldConfig,
    #[serde(default)]
    pub moves: Moves,
}

impl WorldFile {
    pub fn load(path: &Path) -> Result<WorldFile, ScenarioError> {
        let error = |line: Option<usize>, message: String| ScenarioError {
            path: path.to_owned(),
            line,
            message,
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| error(None, format!("cannot read: {e}")))?;
        let file: WorldFile = toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            error(line, e.message().trim_end().replace('\n', " "))
        })?;
        if let Some(problem) = file.world.problem() {
            return Err(error(None, format!("[world]: {problem}")));
        }
        for name in &file.finds {
            name.parse::<Mutation>()
                .map_err(|e| error(None, format!("`finds`: {e}")))?;
        }
        Ok(file)
    }

    /// The mutations it must find.
    pub fn finds(&self) -> Vec<Mutation> {
        self.finds.iter().filter_map(|n| n.parse().ok()).collect()
    }
}

/// What the explorer may do, beyond what is always enabled (an acquire by
/// an idle client, a release, a connect that succeeds, a signal delivered,
/// time to the next timer). Faults are budgeted per path: the budget left
/// is part of the state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Moves {
    /// Acquire deadlines offered besides the pool's own (ms).
    pub acquire_timeouts_ms: Vec<u32>,
    /// Settings acquired with, besides none.
    pub settings: Vec<u32>,
    pub cancel: bool,
    pub taint: bool,
    /// Detach (LISTEN) and unlisten.
    pub detach: bool,
    /// Connects that fail (`connect-fail`) per path.
    pub connect_fails: u8,
    /// Connects answered ReadyForQuery-then-FIN per path.
    pub ready_then_fins: u8,
    /// Sessions the server kills one at a time, per path.
    pub kills: u8,
    /// `kill-all`s per path.
    pub kill_alls: u8,
    /// Signals repeated by the transport, per path.
    pub echoes: u8,
    /// Capacities a `set-capacity` may set.
    pub capacities: Vec<u32>,
    /// `set-capacity`s per path.
    pub resizes: u8,
    /// Close deadlines offered (ms); `close_without_deadline` adds none.
    pub close_timeouts_ms: Vec<u32>,
    pub close_without_deadline: bool,
    /// Registry GC sweeps per path (registry worlds).
    pub gcs: u8,
    /// Orphanings per path (several-process worlds), and whether an
    /// orphaned process may be replaced.
    pub orphans: u8,
    pub spawn: bool,
    /// Fixed steps of time besides the next timer (ms).
    pub waits_ms: Vec<u64>,
    /// After every new state, heal a copy and run the liveness phase on it
    /// (the simulator's end-of-run checks: footprint, starvation, the
    /// floor). Costly: one liveness phase per state.
    pub liveness: bool,
}

/// Faults left on a path; part of the state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Budget {
    connect_fails: u8,
    ready_then_fins: u8,
    kills: u8,
    kill_alls: u8,
    echoes: u8,
    resizes: u8,
    gcs: u8,
    orphans: u8,
}

impl Budget {
    fn of(m: &Moves) -> Budget {
        Budget {
            connect_fails: m.connect_fails,
            ready_then_fins: m.ready_then_fins,
            kills: m.kills,
            kill_alls: m.kill_alls,
            echoes: m.echoes,
            resizes: m.resizes,
            gcs: m.gcs,
            orphans: m.orphans,
        }
    }

    fn word(self) -> u128 {
        let b = [
            self.connect_fails,
            self.ready_then_fins,
            self.kills,
            self.kill_alls,
            self.echoes,
            self.resizes,
            self.gcs,
            self.orphans,
        ];
        u128::from(u64::from_le_bytes(b))
    }

    /// The budget after `t`; `None` if `t` needs what is spent.
    fn spend(mut self, t: &Transition) -> Option<Budget> {
        let left = match t {
            Transition::ConnectFail { .. } => &mut self.connect_fails,
            Transition::ReadyThenFin { .. } => &mut self.ready_then_fins,
            Transition::Kill { .. } => &mut self.kills,
            Transition::KillAll => &mut self.kill_alls,
            Transition::Echo { .. } => &mut self.echoes,
            Transition::SetCapacity { .. } => &mut self.resizes,
            Transition::Gc => &mut self.gcs,
            Transition::Orphan { .. } => &mut self.orphans,
            _ => return Some(self),
        };
        *left = left.checked_sub(1)?;
        Some(self)
    }
}

/// How an exploration is run.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub depth: u32,
    pub canonical: Canonical,
    /// Keep every state (no visited set): to measure what dedup buys.
    pub dedup: bool,
}

/// Where an exploration is, for progress reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Transitions applied (each a state reached, new or not).
    pub explored: u64,
    /// Distinct states (after dedup), the initial one included.
    pub unique: u64,
    /// Depths fully explored.
    pub depth_completed: u32,
    /// States in the frontier being expanded.
    pub frontier: u64,
    /// Liveness phases run (with `moves.liveness`).
    pub liveness_runs: u64,
}

/// A path to a failure.
#[derive(Clone, Debug)]
pub struct Found {
    pub steps: Vec<Step>,
    /// The invariant it broke, or `None` if the pool (or the world)
    /// panicked.
    pub invariant: Option<Invariant>,
    pub detail: String,
    /// Found by the liveness phase run from the path's last state.
    pub in_liveness: bool,
}

/// How an exploration ended.
#[derive(Debug)]
pub struct Explored {
    pub progress: Progress,
    pub found: Option<Found>,
    /// Stopped by the caller before the depth was complete.
    pub stopped: bool,
    /// Every state reachable was explored before the depth.
    pub exhausted: bool,
}

/// Why an exploration cannot run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExploreError {
    #[error(
        "this pool cannot be explored: its SimPool implementation has no `snapshot` (a copy of the pool) and `hash_state` (its state, for the visited set); pool_core::Pool shows how"
    )]
    Unsupported,
}

/// One parent pointer per state: how it was reached.
struct Node {
    parent: u32,
    step: Step,
}

/// The visited set: open addressing over the state hashes themselves
/// (already uniform, so their low bits index it), linear probing. Never
/// iterated, and no random keys: nothing here can differ between runs.
struct Visited {
    /// 0 marks an empty slot (a hash of 0 is stored as 1).
    slots: Vec<u128>,
    len: usize,
}

impl Visited {
    fn new() -> Visited {
        Visited {
            slots: vec![0; 1 << 12],
            len: 0,
        }
    }

    /// Whether `key` is new (it is kept).
    fn insert(&mut self, key: u128) -> bool {
        if (self.len + 1) * 2 > self.slots.len() {
            let bigger = vec![0; self.slots.len() * 2];
            let old = std::mem::replace(&mut self.slots, bigger);
            self.len = 0;
            for k in old.into_iter().filter(|&k| k != 0) {
                self.insert(k);
            }
        }
        let key = key.max(1);
        let mask = self.slots.len() - 1;
        let mut i = key as usize & mask;
        loop {
            match self.slots[i] {
                0 => {
                    self.slots[i] = key;
                    self.len += 1;
                    return true;
                }
                k if k == key => return false,
                _ => i = (i + 1) & mask,
            }
        }
    }
}

/// Explore from a fresh world made by `make`, breadth first, up to
/// `settings.depth` transitions. `progress` is called every few thousand
/// states and at the end of every depth; `false` from it stops the search.
pub fn explore<P: SimPool>(
    make: MakePool<P>,
    pool: Config,
    world: WorldConfig,
    moves: &Moves,
    mutation: Option<Mutation>,
    settings: Settings,
    progress: &mut dyn FnMut(&Progress) -> bool,
) -> Result<Explored, ExploreError> {
    let root = World::new(make, pool, world, mutation, Keep::Hash);
    let mut visited = Visited::new();
    let mut nodes: Vec<Node> = Vec::new();
    let budget = Budget::of(moves);
    let mut scratch = HashScratch::default();
    // The world's hash, and the state's (the world and the budget left).
    let mut key = |w: &World<P>, b: Budget| -> Result<(u128, u128), ExploreError> {
        let h = w
            .state_hash_with(settings.canonical, &mut scratch)
            .ok_or(ExploreError::Unsupported)?;
        let budget = b
            .word()
            .wrapping_mul(0x2545_f491_4f6c_dd1d_9e37_79b9_7f4a_7c15);
        Ok((h, h ^ budget))
    };
    // Worlds whose liveness phase has run: it does not depend on the
    // explorer's budget, so a world met again with another budget left is
    // not healed twice.
    let mut healed = Visited::new();
    if root.snapshot().is_none() && !root.pools().is_empty() {
        return Err(ExploreError::Unsupported);
    }
    visited.insert(key(&root, budget)?.1);
    let mut stats = Progress {
        unique: 1,
        frontier: 1,
        ..Progress::default()
    };
    let path_to = |nodes: &[Node], mut at: u32, last: Option<Step>| {
        let mut steps: Vec<Step> = last.into_iter().collect();
        while at != u32::MAX {
            let node = &nodes[at as usize];
            steps.push(node.step.clone());
            at = node.parent;
        }
        steps.reverse();
        steps
    };
    // The root's own violation (a pool that breaks on creation).
    if let Some(v) = root.violation() {
        return Ok(Explored {
            progress: stats,
            found: Some(Found {
                steps: Vec::new(),
                invariant: Some(v.invariant),
                detail: v.to_string(),
                in_liveness: false,
            }),
            stopped: false,
            exhausted: false,
        });
    }
    let mut frontier: Vec<(World<P>, Budget, u32)> = vec![(root, budget, u32::MAX)];
    let mut candidates = Vec::new();
    let mut next_report = 4096;
    for _ in 0..settings.depth {
        let mut next = Vec::new();
        stats.frontier = frontier.len() as u64;
        for (parent, budget, id) in &frontier {
            candidates.clear();
            enabled(parent, *budget, moves, &mut candidates);
            for step in &candidates {
                let Some(budget) = budget.spend(&step.transition) else {
                    continue;
                };
                let mut child = parent.snapshot().ok_or(ExploreError::Unsupported)?;
                let applied = catch_unwind(AssertUnwindSafe(|| child.apply(step)));
                stats.explored += 1;
                let target = match applied {
                    Ok(target) => target,
                    Err(payload) => {
                        return Ok(Explored {
                            progress: stats,
                            found: Some(Found {
                                steps: path_to(&nodes, *id, Some(step.clone())),
                                invariant: None,
                                detail: crate::run::panic_message(payload.as_ref()),
                                in_liveness: false,
                            }),
                            stopped: false,
                            exhausted: false,
                        });
                    }
                };
                // A violation first: one found while the clock moved to
                // the step's time leaves the step itself skipped.
                if let Some(v) = child.violation() {
                    return Ok(Explored {
                        progress: stats,
                        found: Some(Found {
                            steps: path_to(&nodes, *id, Some(step.clone())),
                            invariant: Some(v.invariant),
                            detail: v.to_string(),
                            in_liveness: false,
                        }),
                        stopped: false,
                        exhausted: false,
                    });
                }
                if let Target::Skipped(_) = target {
                    continue;
                }
                child.clear_notices();
                let world_hash = if settings.dedup {
                    let (world_hash, state) = key(&child, budget)?;
                    if !visited.insert(state) {
                        continue;
                    }
                    Some(world_hash)
                } else {
                    None
                };
                stats.unique += 1;
                nodes.push(Node {
                    parent: *id,
                    step: step.clone(),
                });
                let node = (nodes.len() - 1) as u32;
                if moves.liveness && world_hash.is_none_or(|h| healed.insert(h)) {
                    stats.liveness_runs += 1;
                    if let Some((invariant, detail)) = liveness(&child)? {
                        return Ok(Explored {
                            progress: stats,
                            found: Some(Found {
                                steps: path_to(&nodes, node, None),
                                invariant,
                                detail,
                                in_liveness: true,
                            }),
                            stopped: false,
                            exhausted: false,
                        });
                    }
                }
                next.push((child, budget, node));
            }
            // Between parents, so a stop never leaves one half expanded.
            if stats.explored >= next_report {
                next_report = stats.explored + 4096;
                if !progress(&stats) {
                    return Ok(Explored {
                        progress: stats,
                        found: None,
                        stopped: true,
                        exhausted: false,
                    });
                }
            }
        }
        stats.depth_completed += 1;
        frontier = next;
        stats.frontier = frontier.len() as u64;
        let go_on = progress(&stats);
        if frontier.is_empty() {
            return Ok(Explored {
                progress: stats,
                found: None,
                stopped: false,
                exhausted: true,
            });
        }
        if !go_on {
            return Ok(Explored {
                progress: stats,
                found: None,
                stopped: stats.depth_completed < settings.depth,
                exhausted: false,
            });
        }
    }
    Ok(Explored {
        progress: stats,
        found: None,
        stopped: false,
        exhausted: false,
    })
}

/// `explore` on the reference pool (pool-core's, with `mutation` put back).
/// Not generic, so it is compiled with pool-sim's optimisations even in a
/// caller's dev build (the xtask's).
pub fn explore_reference(
    pool: Config,
    world: WorldConfig,
    moves: &Moves,
    mutation: Option<Mutation>,
    settings: Settings,
    progress: &mut dyn FnMut(&Progress) -> bool,
) -> Result<Explored, ExploreError> {
    explore(
        crate::run::reference_pools(mutation),
        pool,
        world,
        moves,
        mutation,
        settings,
        progress,
    )
}

/// Heal a copy of `world` and run the liveness phase on it, as a run ends:
/// the violation it finds, if any (`None` as the invariant: a panic).
fn liveness<P: SimPool>(
    world: &World<P>,
) -> Result<Option<(Option<Invariant>, String)>, ExploreError> {
    let mut w = world.snapshot().ok_or(ExploreError::Unsupported)?;
    let result = catch_unwind(AssertUnwindSafe(|| {
        w.heal();
        let mut healer = Healer::new(&w);
        while w.violation().is_none() {
            let Some(step) = healer.next(&mut w) else {
                break;
            };
            w.apply(&step);
        }
        w.finish(healer.end());
    }));
    Ok(match result {
        Err(payload) => Some((None, crate::run::panic_message(payload.as_ref()))),
        Ok(()) => w.violation().map(|v| (Some(v.invariant), v.to_string())),
    })
}

/// Every transition enabled in `w` (by `moves` and what is left of the
/// budget), each at its time: now, or later for a wait.
fn enabled<P: SimPool>(w: &World<P>, budget: Budget, moves: &Moves, out: &mut Vec<Step>) {
    let now = w.now();
    let mut push = |transition: Transition| {
        out.push(Step {
            at: now,
            transition,
        })
    };
    let timeouts: Vec<Option<u32>> = std::iter::once(None)
        .chain(moves.acquire_timeouts_ms.iter().copied().map(Some))
        .collect();
    let settings: Vec<Option<u32>> = std::iter::once(None)
        .chain(moves.settings.iter().copied().map(Some))
        .collect();
    let keys = w.config().keys;
    for (i, c) in w.clients().iter().enumerate() {
        let client = i as u32;
        match c.state {
            ClientState::Idle if !c.orphaned => {
                if keys == 0 || c.pool.is_some() {
                    for &setting in &settings {
                        for &timeout_ms in &timeouts {
                            push(Transition::Acquire {
                                client,
                                setting,
                                timeout_ms,
                            });
                        }
                    }
                }
                for key in 0..keys {
                    for &timeout_ms in &timeouts {
                        push(Transition::Login {
                            client,
                            key,
                            timeout_ms,
                        });
                    }
                }
            }
            ClientState::Idle => {}
            ClientState::Waiting { .. } => {
                if moves.cancel {
                    push(Transition::Cancel { client });
                }
            }
            ClientState::Holding { .. } => {
                push(Transition::Release { client });
                if moves.taint {
                    push(Transition::Taint { client });
                }
                if moves.detach {
                    push(Transition::Detach { client });
                }
            }
            ClientState::Listening { .. } => push(Transition::Unlisten { client }),
        }
    }
    let attempts = w.attempts().count() as u32;
    for attempt in 0..attempts {
        push(Transition::ConnectOk { attempt });
        if budget.connect_fails > 0 {
            push(Transition::ConnectFail { attempt });
        }
        if budget.ready_then_fins > 0 {
            push(Transition::ReadyThenFin { attempt });
        }
    }
    let sessions = w.open_sessions().count() as u32;
    if budget.kills > 0 {
        for session in 0..sessions {
            push(Transition::Kill { session });
        }
    }
    if budget.kill_alls > 0 && sessions > 0 {
        push(Transition::KillAll);
    }
    for signal in 0..w.inbox().len() as u32 {
        push(Transition::Deliver { signal });
    }
    if budget.echoes > 0 {
        let echoable = w
            .inbox()
            .iter()
            .filter(|q| !matches!(q.signal.kind, SignalKind::Validated { .. }))
            .count() as u32;
        for signal in 0..echoable {
            push(Transition::Echo { signal });
        }
    }
    let serving: Vec<(u32, usize, bool)> = w
        .pools()
        .iter()
        .filter(|p| p.service == Service::Serving)
        .enumerate()
        .map(|(i, p)| (i as u32, p.capacity, p.close.is_some()))
        .collect();
    for &(pool, capacity, closing) in &serving {
        if budget.resizes > 0 {
            for &c in &moves.capacities {
                if c as usize != capacity {
                    push(Transition::SetCapacity { capacity: c, pool });
                }
            }
        }
        if !closing {
            if moves.close_without_deadline {
                push(Transition::Close {
                    timeout_ms: None,
                    pool,
                });
            }
            for &ms in &moves.close_timeouts_ms {
                push(Transition::Close {
                    timeout_ms: Some(ms),
                    pool,
                });
            }
        }
    }
    if keys > 0 && budget.gcs > 0 {
        push(Transition::Gc);
    }
    if budget.orphans > 0 || moves.spawn {
        for slot in 0..w.config().processes {
            let Some(p) = w.process_in(slot) else {
                continue;
            };
            if p.orphaned_at.is_none() && budget.orphans > 0 {
                push(Transition::Orphan { process: slot });
            }
            if p.orphaned_at.is_some() && moves.spawn {
                push(Transition::Spawn { process: slot });
            }
        }
    }
    let timer = w.next_timer().filter(|&at| at > now);
    let owed = w.next_owed().filter(|&at| at > now);
    for at in [timer, owed.filter(|&o| timer.is_none_or(|t| o < t))]
        .into_iter()
        .flatten()
    {
        out.push(Step {
            at,
            transition: Transition::Wait,
        });
    }
    for &ms in &moves.waits_ms {
        if ms > 0 {
            out.push(Step {
                at: now.plus_ms(ms),
                transition: Transition::Wait,
            });
        }
    }
}

/// The path as a scenario that `cargo xtask replay` reproduces: every step
/// must resolve (none may skip), and `expect` is what it broke.
pub fn scenario_of(
    name: &str,
    about: &str,
    pool: &Config,
    world: &WorldConfig,
    mutation: Option<Mutation>,
    found: &Found,
) -> Scenario {
    let mut scenario = Scenario {
        name: name.to_owned(),
        about: about.to_owned(),
        expect: match found.invariant {
            Some(invariant) => Expect::Violation(invariant),
            None => Expect::Pass,
        },
        mutation,
        seed: None,
        pool: pool.clone(),
        world: world.clone(),
        steps: found.steps.clone(),
        meta: Vec::new(),
    };
    // Every step resolved when it was found: replay holds it to that.
    let resolved = vec![Target::World; found.steps.len()];
    scenario.mark_skips(resolved.iter());
    scenario
}
