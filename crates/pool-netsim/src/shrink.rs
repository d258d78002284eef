//! Shrinking a failing network simulation: the fewest faults, clients and processes that still break the same invariant.
//!
//! Greedy delta debugging over the scenario's data: chunks of the planned
//! connect faults and events, then single ones, then fewer processes,
//! clients and listeners, then shorter fault phases, each kept only if the
//! same invariant still fires. Every try is a whole simulation, so the
//! result is 1-minimal for these moves, not globally minimal.

use pool_sim::Invariant;

use crate::netsim::{NetOutcome, run_scenario};
use crate::plan::{Event, NetScenario};

/// A shrunk scenario and what it took.
#[derive(Clone, Debug)]
pub struct Shrunk {
    pub scenario: NetScenario,
    /// Faults (planned connects + events) before and after.
    pub faults_before: usize,
    /// Simulations run.
    pub runs: u64,
}

/// Shrink `scenario` while `invariant` still fires. `None` if it does not
/// fire to begin with.
pub fn shrink(scenario: &NetScenario, invariant: Invariant) -> Option<Shrunk> {
    let mut runs = 0u64;
    let mut fails = |s: &NetScenario| {
        runs += 1;
        matches!(run_scenario(s).outcome, NetOutcome::Violated { invariant: i, .. } if i == invariant)
    };
    if !fails(scenario) {
        return None;
    }
    let faults_before = scenario.plan.len();
    let mut best = scenario.clone();
    loop {
        let before = best.clone();
        best = shrink_list(best, &mut fails, |s| &mut s.plan.connects);
        best = shrink_list(best, &mut fails, |s| &mut s.plan.events);
        best = fewer(best, &mut fails);
        if best == before {
            break;
        }
    }
    Some(Shrunk {
        scenario: best,
        faults_before,
        runs,
    })
}

/// Remove chunks of a list (halves, quarters, ... single items) while the
/// scenario still fails.
fn shrink_list<T: Clone>(
    mut best: NetScenario,
    fails: &mut impl FnMut(&NetScenario) -> bool,
    list: impl Fn(&mut NetScenario) -> &mut Vec<T>,
) -> NetScenario {
    let mut chunk = list(&mut best.clone()).len().div_ceil(2).max(1);
    loop {
        let mut at = 0;
        while at < list(&mut best.clone()).len() {
            let mut candidate = best.clone();
            let items = list(&mut candidate);
            let end = (at + chunk).min(items.len());
            items.drain(at..end);
            if fails(&candidate) {
                best = candidate;
            } else {
                at += chunk;
            }
        }
        if chunk == 1 {
            return best;
        }
        chunk = chunk.div_ceil(2);
    }
}

/// `scenario` without process `gone`: its faults dropped, the later
/// processes' renumbered.
fn without_process(scenario: &NetScenario, gone: u32) -> NetScenario {
    let mut s = scenario.clone();
    s.options.processes -= 1;
    let renumber = |p: u32| if p > gone { p - 1 } else { p };
    s.plan.connects.retain(|c| c.process != gone);
    for c in &mut s.plan.connects {
        c.process = renumber(c.process);
    }
    s.plan.events.retain(|e| match e.event {
        Event::Partition { process, .. } | Event::Resize { process, .. } => process != gone,
        Event::TerminateAll | Event::CrashDb { .. } => true,
    });
    for e in &mut s.plan.events {
        if let Event::Partition { process, .. } | Event::Resize { process, .. } = &mut e.event {
            *process = renumber(*process);
        }
    }
    s
}

/// Fewer processes, clients and listeners; a shorter fault phase; no
/// cancelled gets, long holds or role limit.
fn fewer(mut best: NetScenario, fails: &mut impl FnMut(&NetScenario) -> bool) -> NetScenario {
    // Each process in turn, the later ones renumbered down.
    let mut gone = 0;
    while gone < best.options.processes && best.options.processes > 1 {
        let candidate = without_process(&best, gone);
        if fails(&candidate) {
            best = candidate;
        } else {
            gone += 1;
        }
    }
    let moves: [fn(&mut NetScenario) -> bool; 6] = [
        |s| {
            if s.options.clients <= 1 {
                return false;
            }
            s.options.clients -= 1;
            s.options.listeners = s.options.listeners.min(s.options.clients);
            true
        },
        |s| {
            if s.options.listeners == 0 {
                return false;
            }
            s.options.listeners -= 1;
            true
        },
        |s| {
            if s.options.cancel_pct == 0 {
                return false;
            }
            s.options.cancel_pct = 0;
            true
        },
        |s| {
            if s.options.long_hold_pct == 0 {
                return false;
            }
            s.options.long_hold_pct = 0;
            true
        },
        |s| {
            if s.options.role_conn_limit == 0 {
                return false;
            }
            s.options.role_conn_limit = 0;
            true
        },
        |s| {
            let last = s.plan.events.iter().map(|e| e.at_ms).max().unwrap_or(0);
            let shorter = (last + 1).max(1_000);
            if shorter >= s.options.faults_ms {
                return false;
            }
            s.options.faults_ms = shorter;
            true
        },
    ];
    for step in moves {
        loop {
            let mut candidate = best.clone();
            if !step(&mut candidate) || !fails(&candidate) {
                break;
            }
            best = candidate;
        }
    }
    best
}
