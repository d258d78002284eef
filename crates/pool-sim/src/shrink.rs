//! Shrinking a failing run to a scenario a person reads in a minute: delta
//! debugging over its transitions (chunks, then single transitions), then
//! smaller values and times, repeated until nothing more can go. The result
//! is 1-minimal: removing any single transition makes the failure go away.

use pool_core::{Mutation, Time};

use crate::invariant::Invariant;
use crate::run::{Options, Outcome, run_scenario};
use crate::scenario::{Expect, Scenario};
use crate::transition::{Step, Transition};

/// What a shrink did.
#[derive(Debug)]
pub struct Shrunk {
    pub scenario: Scenario,
    pub steps_before: usize,
    /// Candidate runs tried.
    pub runs: u64,
}

/// Whether a candidate still shows the failure: `invariant` fires (with
/// `mutation` put back, if any), and without the mutation the same steps
/// pass, so the scenario pins the bug and nothing else.
#[derive(Debug, Clone, Copy)]
pub struct Keeps {
    pub invariant: Invariant,
    pub mutation: Option<Mutation>,
}

impl Keeps {
    fn holds(&self, scenario: &Scenario, runs: &mut u64) -> bool {
        *runs += 1;
        let options = Options {
            mutation: self.mutation,
            ..Options::default()
        };
        let report = run_scenario(scenario, options);
        if report.outcome.invariant() != Some(self.invariant) {
            return false;
        }
        if self.mutation.is_none() {
            return true;
        }
        *runs += 1;
        let clean = Scenario {
            mutation: None,
            ..scenario.clone()
        };
        run_scenario(&clean, Options::default()).outcome == Outcome::Pass
    }
}

/// Shrink `scenario`'s steps while `keeps` holds. `scenario` must fail as
/// `keeps` says to begin with (returns `None` otherwise).
pub fn shrink(scenario: &Scenario, keeps: Keeps) -> Option<Shrunk> {
    let mut runs = 0;
    let mut current = Scenario {
        expect: Expect::Violation(keeps.invariant),
        mutation: keeps.mutation,
        ..plain(scenario)
    };
    if !keeps.holds(&current, &mut runs) {
        return None;
    }
    let steps_before = current.steps.len();
    loop {
        let before = current.clone();
        remove_chunks(&mut current, keeps, &mut runs);
        remove_singles(&mut current, keeps, &mut runs);
        simplify_values(&mut current, keeps, &mut runs);
        compress_time(&mut current, keeps, &mut runs);
        simplify_config(&mut current, keeps, &mut runs);
        if current == before {
            break;
        }
    }
    // Written strictly: only the steps that resolve to nothing may.
    let record = Options {
        record: true,
        ..Options::default()
    };
    let replay = run_scenario(&current, record);
    current.mark_skips(replay.recorded.iter().map(|(_, target)| target));
    if replay.recorded.len() == current.steps.len() {
        // Each index as the world took it, within its candidates.
        for (step, (taken, _)) in current.steps.iter_mut().zip(&replay.recorded) {
            step.transition = taken.transition.clone();
        }
    }
    Some(Shrunk {
        scenario: current,
        steps_before,
        runs,
    })
}

/// The scenario as a plain sequence of the vocabulary's steps: a script
/// with names, backend modes or assertions is replayed once and its steps
/// taken as they resolved (the backend's answers become steps of their own;
/// assertions are not kept).
fn plain(scenario: &Scenario) -> Scenario {
    let scripted = scenario
        .meta
        .iter()
        .any(|m| m.select.is_some() || m.entry != crate::scenario::Entry::Step);
    if !scripted {
        return Scenario {
            meta: Vec::new(),
            ..scenario.clone()
        };
    }
    let record = Options {
        record: true,
        ..Options::default()
    };
    let replay = run_scenario(scenario, record);
    Scenario {
        steps: replay.recorded.into_iter().map(|(step, _)| step).collect(),
        meta: Vec::new(),
        ..scenario.clone()
    }
}

/// Try `steps` in place of the current ones; keep them if the failure holds.
fn attempt(current: &mut Scenario, steps: Vec<Step>, keeps: Keeps, runs: &mut u64) -> bool {
    let candidate = Scenario {
        steps,
        ..current.clone()
    };
    if keeps.holds(&candidate, runs) {
        *current = candidate;
        true
    } else {
        false
    }
}

/// ddmin's first stage: remove whole chunks, halving their size.
fn remove_chunks(current: &mut Scenario, keeps: Keeps, runs: &mut u64) {
    let mut chunks = 2;
    while current.steps.len() >= 2 {
        let len = current.steps.len();
        let size = len.div_ceil(chunks);
        let mut removed = false;
        let mut start = 0;
        while start < current.steps.len() {
            let end = (start + size).min(current.steps.len());
            let mut steps = current.steps[..start].to_vec();
            steps.extend_from_slice(&current.steps[end..]);
            if attempt(current, steps, keeps, runs) {
                removed = true;
            } else {
                start = end;
            }
        }
        if removed {
            chunks = (chunks - 1).max(2);
        } else if size == 1 {
            break;
        } else {
            chunks = (chunks * 2).min(current.steps.len());
        }
    }
}

/// Remove single transitions, last first, until none can go.
fn remove_singles(current: &mut Scenario, keeps: Keeps, runs: &mut u64) {
    loop {
        let mut removed = false;
        let mut i = current.steps.len();
        while i > 0 {
            i -= 1;
            let mut steps = current.steps.clone();
            steps.remove(i);
            if attempt(current, steps, keeps, runs) {
                removed = true;
            }
        }
        if !removed {
            break;
        }
    }
}

/// A smaller world: fewer processes, clients and keys, a smaller pool,
/// timers off, no role limit; each kept only if the failure holds.
fn simplify_config(current: &mut Scenario, keeps: Keeps, runs: &mut u64) {
    type Get = fn(&Scenario) -> u64;
    type Set = fn(&mut Scenario, u64);
    // Sizes go down to 1 (0 is a degenerate pool, not a simpler one); the
    // floor and the limit to 0; timers to 0, which disables them.
    let (size, zero): (&[u64], &[u64]) = (&[1], &[0, 1]);
    let fields: [(Get, Set, &[u64]); 11] = [
        (
            |s| s.world.processes.into(),
            |s, v| s.world.processes = v as u32,
            size,
        ),
        (
            |s| s.world.clients.into(),
            |s, v| s.world.clients = v as u32,
            size,
        ),
        (
            |s| s.world.keys.into(),
            |s, v| s.world.keys = v as u32,
            size,
        ),
        (
            |s| s.pool.max_size as u64,
            |s, v| s.pool.max_size = v as usize,
            size,
        ),
        (
            |s| s.world.role_conn_limit.into(),
            |s, v| s.world.role_conn_limit = v as u32,
            zero,
        ),
        (
            |s| s.pool.min_idle as u64,
            |s, v| s.pool.min_idle = v as usize,
            zero,
        ),
        (
            |s| s.pool.idle_timeout_ms,
            |s, v| s.pool.idle_timeout_ms = v,
            zero,
        ),
        (
            |s| s.pool.max_lifetime_ms,
            |s, v| s.pool.max_lifetime_ms = v,
            zero,
        ),
        (
            |s| s.pool.acquire_timeout_ms,
            |s, v| s.pool.acquire_timeout_ms = v,
            zero,
        ),
        (
            |s| s.pool.connect_timeout_ms,
            |s, v| s.pool.connect_timeout_ms = v,
            zero,
        ),
        (
            |s| s.pool.reconnect_backoff_ms,
            |s, v| s.pool.reconnect_backoff_ms = v,
            zero,
        ),
    ];
    for (get, set, floors) in fields {
        let value = get(current);
        let halved = [value / 2];
        for &smaller in floors.iter().chain(&halved) {
            if smaller >= value {
                continue;
            }
            let mut candidate = current.clone();
            set(&mut candidate, smaller);
            if candidate.world.problem().is_some() {
                continue;
            }
            if keeps.holds(&candidate, runs) {
                *current = candidate;
                break;
            }
        }
    }
}

/// Smaller values: indices toward 0, settings and timeouts dropped or cut.
fn simplify_values(current: &mut Scenario, keeps: Keeps, runs: &mut u64) {
    for i in 0..current.steps.len() {
        for candidate in smaller(&current.steps[i].transition) {
            let mut steps = current.steps.clone();
            steps[i].transition = candidate;
            if attempt(current, steps, keeps, runs) {
                break;
            }
        }
    }
}

/// Candidate simplifications of one transition, simplest first.
fn smaller(t: &Transition) -> Vec<Transition> {
    let mut out = Vec::new();
    let mut push = |c: Transition| {
        if &c != t {
            out.push(c);
        }
    };
    // A step that only moves the clock is the simplest of all.
    push(Transition::Wait);
    // Indices are taken modulo the candidates: the small numbers first.
    let halves = |n: u32| [0, 1, 2, 3, n / 2].into_iter().filter(move |&m| m < n);
    match *t {
        Transition::Acquire {
            client,
            setting,
            timeout_ms,
        } => {
            for client in halves(client) {
                push(Transition::Acquire {
                    client,
                    setting,
                    timeout_ms,
                });
            }
            push(Transition::Acquire {
                client,
                setting: None,
                timeout_ms,
            });
            push(Transition::Acquire {
                client,
                setting,
                timeout_ms: None,
            });
        }
        Transition::Login {
            client,
            key,
            timeout_ms,
        } => {
            for client in halves(client) {
                push(Transition::Login {
                    client,
                    key,
                    timeout_ms,
                });
            }
            for key in halves(key) {
                push(Transition::Login {
                    client,
                    key,
                    timeout_ms,
                });
            }
            push(Transition::Login {
                client,
                key,
                timeout_ms: None,
            });
        }
        Transition::Cancel { client } => {
            halves(client).for_each(|client| push(Transition::Cancel { client }))
        }
        Transition::Release { client } => {
            halves(client).for_each(|client| push(Transition::Release { client }))
        }
        Transition::Taint { client } => {
            push(Transition::Release { client });
            halves(client).for_each(|client| push(Transition::Taint { client }));
        }
        Transition::Detach { client } => {
            halves(client).for_each(|client| push(Transition::Detach { client }))
        }
        Transition::Unlisten { client } => {
            halves(client).for_each(|client| push(Transition::Unlisten { client }))
        }
        Transition::ConnectOk { attempt } => {
            halves(attempt).for_each(|attempt| push(Transition::ConnectOk { attempt }))
        }
        Transition::ConnectFail { attempt } | Transition::ReadyThenFin { attempt } => {
            push(Transition::ConnectOk { attempt });
            for a in halves(attempt) {
                push(match *t {
                    Transition::ConnectFail { .. } => Transition::ConnectFail { attempt: a },
                    _ => Transition::ReadyThenFin { attempt: a },
                });
            }
        }
        Transition::Kill { session } => {
            halves(session).for_each(|session| push(Transition::Kill { session }))
        }
        Transition::Deliver { signal } => {
            halves(signal).for_each(|signal| push(Transition::Deliver { signal }))
        }
        Transition::Echo { signal } => {
            halves(signal).for_each(|signal| push(Transition::Echo { signal }))
        }
        Transition::SetCapacity { capacity, pool } => {
            for capacity in halves(capacity) {
                push(Transition::SetCapacity { capacity, pool });
            }
            push(Transition::SetCapacity { capacity, pool: 0 });
        }
        Transition::Close { timeout_ms, pool } => {
            push(Transition::Close {
                timeout_ms: timeout_ms.map(|ms| ms / 2),
                pool,
            });
            push(Transition::Close {
                timeout_ms,
                pool: 0,
            });
        }
        Transition::Orphan { process } => {
            halves(process).for_each(|process| push(Transition::Orphan { process }))
        }
        Transition::Spawn { process } => {
            halves(process).for_each(|process| push(Transition::Spawn { process }))
        }
        Transition::KillAll | Transition::Gc | Transition::Wait => {}
    }
    out
}

/// Smaller times: close each gap between steps, or halve it; then start at 0.
fn compress_time(current: &mut Scenario, keeps: Keeps, runs: &mut u64) {
    for i in 0..current.steps.len() {
        let previous = if i == 0 {
            Time::ZERO
        } else {
            current.steps[i - 1].at
        };
        let gap = current.steps[i].at.millis_since(previous);
        for cut in [gap, gap / 2] {
            if cut == 0 {
                continue;
            }
            let mut steps = current.steps.clone();
            for step in &mut steps[i..] {
                step.at = Time::from_millis(step.at.as_millis() - cut);
            }
            if attempt(current, steps, keeps, runs) {
                break;
            }
        }
    }
}
